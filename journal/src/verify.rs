//! `verify`: walks every execution's chain and every index entry and reports
//! each problem by execution and `seq`. It reads the store directly (the
//! writer runs it between groups, so nothing moves underneath it) and never
//! stops at the first problem.

use std::collections::HashMap;
use std::fmt;

use crate::keys::{self, Head};
use crate::record::{self, GENESIS_HASH, HASH_LEN};
use crate::store::Store;
use crate::{Error, ExecutionId, Result};

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub executions: u64,
    pub events: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One problem, located by execution and `seq` (`seq` 0: the execution as a
/// whole, e.g. its head index entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub execution: ExecutionId,
    pub seq: u64,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The record does not decode, does not chain, or sits under the wrong key.
    BrokenRecord(String),
    /// A `seq` is absent from an otherwise continuing chain.
    MissingRecord,
    /// A derived index entry disagrees with the records.
    BrokenIndex(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProblemKind::BrokenRecord(why) => {
                write!(
                    f,
                    "execution {} seq {}: broken record: {why}",
                    self.execution, self.seq
                )
            }
            ProblemKind::MissingRecord => {
                write!(
                    f,
                    "execution {} seq {}: record missing",
                    self.execution, self.seq
                )
            }
            ProblemKind::BrokenIndex(why) => {
                write!(
                    f,
                    "execution {} seq {}: broken index: {why}",
                    self.execution, self.seq
                )
            }
        }
    }
}

const CHUNK: usize = 4096;

struct Chain {
    execution: ExecutionId,
    next_seq: u64,
    prev_hash: [u8; HASH_LEN],
    last_position: u64,
}

pub(crate) fn verify(store: &dyn Store) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut chain: Option<Chain> = None;
    let mut chains_seen: HashMap<ExecutionId, ()> = HashMap::new();
    let mut from = vec![keys::EVENT];
    let end = vec![keys::EVENT + 1];
    loop {
        let entries = store.scan(&from, &end, CHUNK)?;
        let Some((last_key, _)) = entries.last() else {
            break;
        };
        from = last_key.clone();
        from.push(0);
        for (k, v) in entries {
            let Some((execution, seq)) = keys::parse_exec_seq(&k) else {
                report.problems.push(Problem {
                    execution: ExecutionId::NIL,
                    seq: 0,
                    kind: ProblemKind::BrokenRecord(format!("malformed record key {k:02x?}")),
                });
                continue;
            };
            if chain.as_ref().map(|c| c.execution) != Some(execution) {
                if let Some(done) = chain.take() {
                    check_head(store, &done, &mut report)?;
                }
                report.executions += 1;
                chains_seen.insert(execution, ());
                chain = Some(Chain {
                    execution,
                    next_seq: 1,
                    prev_hash: GENESIS_HASH,
                    last_position: 0,
                });
            }
            let Some(c) = chain.as_mut() else { continue };
            while c.next_seq < seq {
                report.problems.push(Problem {
                    execution,
                    seq: c.next_seq,
                    kind: ProblemKind::MissingRecord,
                });
                c.next_seq += 1;
            }
            report.events += 1;
            match record::decode((execution, seq), &v, Some(&c.prev_hash)) {
                Ok(rec) => {
                    check_global(store, &rec.execution, rec.seq, rec.position, &mut report)?;
                    c.prev_hash = rec.hash;
                    c.last_position = rec.position;
                }
                Err(Error::Corrupt { reason, .. }) => {
                    report.problems.push(Problem {
                        execution,
                        seq,
                        kind: ProblemKind::BrokenRecord(reason),
                    });
                    // Chain the rest to what is stored, so one damaged record
                    // is reported once and its successors are still checked.
                    if let Some(h) = record::stored_hash(&v) {
                        c.prev_hash = h;
                    }
                }
                Err(e) => return Err(e),
            }
            c.next_seq = seq + 1;
        }
    }
    if let Some(done) = chain.take() {
        check_head(store, &done, &mut report)?;
    }
    // Every index entry must belong to a record checked above.
    let globals = count(store, keys::GLOBAL)?;
    if globals != report.events {
        report.problems.push(Problem {
            execution: ExecutionId::NIL,
            seq: 0,
            kind: ProblemKind::BrokenIndex(format!(
                "the global index has {globals} entries for {} records",
                report.events
            )),
        });
    }
    for (k, _) in store.scan(&[keys::HEAD], &[keys::HEAD + 1], usize::MAX)? {
        if let Some(id) = keys::parse_head_key(&k)
            && !chains_seen.contains_key(&id)
        {
            report.problems.push(Problem {
                execution: id,
                seq: 0,
                kind: ProblemKind::BrokenIndex(
                    "a head entry names an execution with no records".into(),
                ),
            });
        }
    }
    Ok(report)
}

fn check_global(
    store: &dyn Store,
    execution: &ExecutionId,
    seq: u64,
    position: u64,
    report: &mut VerifyReport,
) -> Result<()> {
    let ok = match store.get(&keys::global(position))? {
        Some(v) => keys::parse_global_value(&v).ok() == Some((*execution, seq)),
        None => false,
    };
    if !ok {
        report.problems.push(Problem {
            execution: *execution,
            seq,
            kind: ProblemKind::BrokenIndex(format!(
                "global position {position} does not point at this record"
            )),
        });
    }
    Ok(())
}

fn check_head(store: &dyn Store, chain: &Chain, report: &mut VerifyReport) -> Result<()> {
    let expected = Head {
        last_seq: chain.next_seq - 1,
        last_position: chain.last_position,
        last_hash: chain.prev_hash,
    };
    let found = match store.get(&keys::head(chain.execution))? {
        Some(v) => Head::decode(&v).ok(),
        None => None,
    };
    if found != Some(expected) {
        report.problems.push(Problem {
            execution: chain.execution,
            seq: 0,
            kind: ProblemKind::BrokenIndex(format!(
                "head entry {found:?} does not match the last record (seq {})",
                expected.last_seq
            )),
        });
    }
    Ok(())
}

fn count(store: &dyn Store, prefix: u8) -> Result<u64> {
    let mut n = 0u64;
    let mut from = vec![prefix];
    loop {
        let entries = store.scan(&from, &[prefix + 1], CHUNK)?;
        let Some((last, _)) = entries.last() else {
            return Ok(n);
        };
        n += entries.len() as u64;
        from = last.clone();
        from.push(0);
    }
}
