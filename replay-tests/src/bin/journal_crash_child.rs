//! Child process for the journal crash test: appends to a few executions from
//! several concurrent tasks, forever, and prints `ack <execution> <last_seq>`
//! for every acknowledged append. The test kills it with SIGKILL at a random
//! moment and checks that every printed ack survived.
//!
//! Usage: `journal-crash-child <data-dir> <executions> <tasks>`

use std::io::Write;

use anyhow::Context;
use retrace_journal::{EventLog, Journal, NewEvent, Options, StreamId};
use retrace_replay_tests::crash::{execution, payload};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().context("missing data dir")?;
    let executions: u64 = args.next().context("missing executions")?.parse()?;
    let tasks: u64 = args.next().context("missing tasks")?.parse()?;
    let journal = EventLog::open(&dir, Options::default())?;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let journal = journal.clone();
        // Each task owns the executions congruent to it, so it knows their seq.
        let mine: Vec<u64> = (0..executions).filter(|e| e % tasks == task).collect();
        handles.push(tokio::spawn(async move { run(journal, mine).await }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

async fn run(journal: EventLog, mine: Vec<u64>) -> anyhow::Result<()> {
    let ids: Vec<StreamId> = mine.iter().map(|&e| execution(e)).collect();
    let mut next: Vec<u64> = Vec::new();
    for id in &ids {
        next.push(journal.head(*id).await?.map_or(1, |h| h.last_seq + 1));
    }
    let mut round = 0u64;
    loop {
        let i = (round as usize) % ids.len();
        round += 1;
        let first = next[i];
        // 1 to 3 events per append, so batches of different sizes are in flight.
        let count = 1 + (first + round) % 3;
        let events = (first..first + count)
            .map(|seq| NewEvent::new("crash_test", seq, payload(mine[i], seq)))
            .collect();
        let a = journal.append(ids[i], first, events).await?;
        next[i] = a.last_seq + 1;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ack {} {}", mine[i], a.last_seq)?;
        out.flush()?;
    }
}
