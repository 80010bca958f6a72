//! Invariant 1 and 4, with real processes: an acknowledged event is never
//! lost, whatever crash follows, and every chain still verifies.
//!
//! A child process appends in a loop and prints each acknowledged append; this
//! test SIGKILLs it after a random number of acknowledgements, reopens the
//! journal, and checks every acknowledged event is there with the bytes that
//! were written and that `verify` finds nothing wrong. Then it starts the child
//! again on the same folder, many times over.
//!
//! `RETRACE_CRASH_ROUNDS` (default 12) sets the number of kills;
//! `RETRACE_CRASH_SEED` repeats a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use retrace_journal::{EventLog, Journal, Options};
use retrace_replay_tests::crash::{execution, payload};
use retrace_replay_tests::rng::SplitMix;

const EXECUTIONS: u64 = 6;
const TASKS: u64 = 3;

#[test]
fn acknowledged_appends_survive_sigkill() {
    let seed = SplitMix::seed_from_env("RETRACE_CRASH_SEED");
    let rounds: u64 = std::env::var("RETRACE_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    eprintln!("journal crash test: seed {seed} (RETRACE_CRASH_SEED), {rounds} rounds");
    let mut rng = SplitMix::new(seed);
    let dir = tempfile::tempdir().unwrap();
    // Highest acknowledged seq per execution, over all rounds.
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();

    for round in 0..rounds {
        let kill_after = rng.range(1, 400);
        let mut child = Command::new(env!("CARGO_BIN_EXE_journal-crash-child"))
            .arg(dir.path())
            .arg(EXECUTIONS.to_string())
            .arg(TASKS.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        let mut record = |line: &str| {
            // A line cut by the kill is no acknowledgement.
            let mut parts = line.split(' ');
            if let (Some("ack"), Some(e), Some(s), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
                && let (Ok(e), Ok(s)) = (e.parse::<u64>(), s.parse::<u64>())
            {
                let max = acked.entry(e).or_default();
                *max = (*max).max(s);
            }
        };
        while seen < kill_after {
            let Some(line) = lines.next() else { break };
            record(&line.unwrap());
            seen += 1;
        }
        child.kill().unwrap(); // SIGKILL
        // Acknowledgements printed before the kill still count.
        for line in lines.map_while(Result::ok) {
            record(&line);
        }
        let status = child.wait().unwrap();
        assert!(
            seen == kill_after,
            "round {round}: the child died on its own: {status}"
        );

        let journal = EventLog::open(dir.path(), Options::default()).unwrap();
        for (&e, &last) in &acked {
            let events = block_on(journal.read(execution(e), 1, usize::MAX)).unwrap();
            assert!(
                events.len() as u64 >= last,
                "seed {seed} round {round}: execution {e} lost acknowledged events: has {}, acknowledged {last}",
                events.len()
            );
            for r in &events {
                assert_eq!(r.payload, payload(e, r.seq), "seed {seed}: wrong bytes");
            }
        }
        let report = block_on(journal.verify()).unwrap();
        assert!(report.is_sound(), "seed {seed} round {round}: {report:?}");
    }
    assert!(
        acked.values().sum::<u64>() > rounds,
        "the child made progress"
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}
