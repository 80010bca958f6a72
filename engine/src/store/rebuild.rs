//! Rebuilding every stored execution at once, as an engine opens.
//!
//! Two ways give the same states:
//!
//! - **By reads**: each execution from its newest snapshot, then its own
//!   events ([`Journal::read`]: for the sled journal, point reads along the
//!   execution's back-links), one execution after another.
//! - **By scan**: each execution's snapshot first, then one pass over the
//!   whole journal in position order ([`Journal::read_global`]: for sled, a
//!   sequential range read), each record handed to the worker thread that
//!   owns its execution, which checks its chain link and folds it. Reading
//!   and folding overlap, and the folds are spread over the cores.
//!
//! [`Rebuild::Auto`] scans when the events to fold are at least half the
//! journal (a scan then reads at most twice what it needs, each record
//! much more cheaply), and reads otherwise (few unfinished executions in a
//! long journal).
//!
//! Whichever way, every folded record is checked as `read` checks it: its
//! seq is the next of its execution, it chains to the record before it
//! (its hash and back-link), and it decodes. A history that stops short of
//! its head is an error, not a shorter state.
//!
//! It must never write, and never apply an event to a state out of order.

use std::collections::HashMap;

use retrace_journal::record::{GENESIS_HASH, HASH_LEN};
use retrace_journal::{EventRecord, Journal, StreamId};

use super::codec;
use super::{execution_of, stream_of};
use crate::ExecutionId;
use crate::error::Error;
use crate::machine::{ExecutionState, apply};

/// How the states are rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rebuild {
    /// By scan when the events to fold are at least half the journal.
    #[default]
    Auto,
    /// Each execution from its own events.
    Reads,
    /// One pass over the journal, folded on worker threads.
    Scan,
}

/// How many records one global read takes during a scan.
const SCAN_CHUNK: usize = 4096;
/// Chunks in flight to each worker: enough to keep it busy while the
/// reader reads the next one, few enough to bound memory.
const IN_FLIGHT: usize = 2;
/// The most fold workers, whatever the machine has.
const MAX_WORKERS: usize = 8;

/// One execution being folded by a scan.
struct Folding {
    state: ExecutionState,
    /// Where its history must end.
    last_seq: u64,
    /// The hash and position of the record at `state.seq`, which the next
    /// record must chain to.
    prev_hash: [u8; HASH_LEN],
    prev_position: u64,
}

/// The newest state of each execution in `heads` (execution id, last seq),
/// in the order given. An execution with no events has no state.
pub async fn rebuild_all(
    journal: &dyn Journal,
    heads: &[(ExecutionId, u64)],
    how: Rebuild,
) -> Result<Vec<ExecutionState>, Error> {
    let mut states = Vec::with_capacity(heads.len());
    for &(id, _) in heads {
        let state = codec::usable_snapshot(journal, id).await;
        states.push(state.unwrap_or_else(|| ExecutionState::empty(id)));
    }
    let to_fold: u64 = heads
        .iter()
        .zip(&states)
        .map(|(&(_, last), s)| last.saturating_sub(s.seq))
        .sum();
    let scan = match how {
        Rebuild::Reads => false,
        Rebuild::Scan => true,
        Rebuild::Auto => {
            to_fold > 0 && to_fold.saturating_mul(2) >= journal.last_position().await?
        }
    };
    let states = if scan {
        by_scan(journal, heads, states).await?
    } else {
        let mut folded = Vec::with_capacity(states.len());
        for state in states {
            folded.push(codec::fold_from(journal, state, u64::MAX).await?);
        }
        folded
    };
    Ok(states.into_iter().filter(|s| s.seq > 0).collect())
}

async fn by_scan(
    journal: &dyn Journal,
    heads: &[(ExecutionId, u64)],
    states: Vec<ExecutionState>,
) -> Result<Vec<ExecutionState>, Error> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS);
    let mut shards: Vec<HashMap<StreamId, Folding>> =
        (0..workers).map(|_| HashMap::new()).collect();
    let mut order = Vec::with_capacity(heads.len());
    // Those whose snapshot is their head (ended executions, mostly) are
    // done already.
    let mut done: HashMap<StreamId, ExecutionState> = HashMap::new();
    for (&(id, last_seq), state) in heads.iter().zip(states) {
        let stream = stream_of(id);
        order.push(stream);
        if state.seq == last_seq {
            done.insert(stream, state);
            continue;
        }
        // The record a snapshot ends at is the one the next must chain to.
        let (prev_hash, prev_position) = if state.seq == 0 {
            (GENESIS_HASH, 0)
        } else {
            let at = journal.read(stream, state.seq, 1).await?;
            let r = at
                .first()
                .ok_or_else(|| short(stream, state.seq, last_seq))?;
            (r.hash, r.position)
        };
        shards[shard(stream, workers)].insert(
            stream,
            Folding {
                state,
                last_seq,
                prev_hash,
                prev_position,
            },
        );
    }
    let last_position = journal.last_position().await?;
    let mut senders = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for mut shard in shards {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<EventRecord>>(IN_FLIGHT);
        senders.push(tx);
        handles.push(tokio::task::spawn_blocking(move || {
            while let Some(chunk) = rx.blocking_recv() {
                for record in chunk {
                    if let Some(f) = shard.get_mut(&record.stream) {
                        fold_one(f, &record)?;
                    }
                }
            }
            Ok::<_, Error>(shard)
        }));
    }
    let mut from = 1;
    let read = async {
        while from <= last_position {
            let chunk = journal.read_global(from, SCAN_CHUNK).await?;
            let Some(last) = chunk.last() else { break };
            from = last.position + 1;
            let mut split: Vec<Vec<EventRecord>> = (0..workers)
                .map(|_| Vec::with_capacity(SCAN_CHUNK / workers + 16))
                .collect();
            for record in chunk {
                if record.position <= last_position && execution_of(record.stream).is_some() {
                    split[shard(record.stream, workers)].push(record);
                }
            }
            for (tx, part) in senders.iter().zip(split) {
                // A worker that stopped has failed: its error is below.
                if tx.send(part).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok::<_, Error>(())
    }
    .await;
    drop(senders);
    let mut folded: HashMap<StreamId, Folding> = HashMap::with_capacity(order.len());
    let mut failed = read.err();
    for handle in handles {
        match handle.await {
            Ok(Ok(shard)) => folded.extend(shard),
            Ok(Err(e)) => failed = failed.or(Some(e)),
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Err(_) => {
                let stopped = Error::Inconsistent("a rebuild worker was stopped".into());
                failed = failed.or(Some(stopped));
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    order
        .into_iter()
        .map(|stream| {
            if let Some(state) = done.remove(&stream) {
                return Ok(state);
            }
            let f = folded.remove(&stream).ok_or_else(|| short(stream, 0, 0))?;
            if f.state.seq != f.last_seq {
                return Err(short(stream, f.state.seq, f.last_seq));
            }
            Ok(f.state)
        })
        .collect()
}

/// Checks `record` as [`Journal::read`] would and applies it.
fn fold_one(f: &mut Folding, record: &EventRecord) -> Result<(), Error> {
    if record.seq <= f.state.seq {
        // Before the snapshot this execution starts from.
        return Ok(());
    }
    let corrupt = |reason: &str| {
        Error::Journal(retrace_journal::Error::Corrupt {
            stream: record.stream,
            seq: record.seq,
            reason: reason.to_owned(),
            source: None,
        })
    };
    if record.seq != f.state.seq + 1 {
        return Err(corrupt("a seq is missing before this record"));
    }
    if record.prev_position != f.prev_position || !record.chains_to(&f.prev_hash) {
        return Err(corrupt(
            "hash does not match the chain (record altered or out of place)",
        ));
    }
    let event = codec::decode(record)?;
    apply(&mut f.state, record.seq, record.recorded_at_ms, &event)?;
    f.prev_hash = record.hash;
    f.prev_position = record.position;
    Ok(())
}

/// A history that ends before its head.
fn short(stream: StreamId, at: u64, last_seq: u64) -> Error {
    Error::Journal(retrace_journal::Error::Corrupt {
        stream,
        seq: at + 1,
        reason: format!("the history ends at seq {at}, before its head at {last_seq}"),
        source: None,
    })
}

/// The worker that owns `stream`'s fold: by the random low bytes of its id.
fn shard(stream: StreamId, workers: usize) -> usize {
    let b = stream.as_bytes();
    let low = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
    (low % workers as u64) as usize
}
