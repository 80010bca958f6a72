//! The offline commands (`verify`, `replay`, `export`) never change the data
//! folder they read: run on a folder whose stored heads lag the log (as a
//! crash leaves them, which opening a journal for writing would bring up to
//! date), every raw key and value is byte-for-byte what it was, and the
//! outputs still show the whole history. A folder that holds no journal is
//! refused, not initialised.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::ffi::OsStr;
use std::path::Path;

use cli_support::{Server, hello_to_completion, run};
use retrace_engine::ExecutionId;
use retrace_journal::store::sled::{LOCK_FILE, SledStore};
use retrace_journal::store::{Op, Store};
use serde_json::Value;

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every raw entry of the folder's store (`docs/journal-format.md`: all keys
/// start with `l`, `x`, `h`, `s` or `m`).
fn raw_entries(data: &Path) -> Entries {
    let store = SledStore::open(data).unwrap();
    store.scan(b"", &[0xff], usize::MAX).unwrap()
}

/// Deletes every stored head (`h` + execution) and the heads checkpoint
/// (`mheads`): the heads now lag the whole log.
fn make_heads_lag(data: &Path) {
    let store = SledStore::open(data).unwrap();
    let mut ops: Vec<Op> = store
        .scan(b"h", b"i", usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| Op::Delete(k))
        .collect();
    assert!(!ops.is_empty(), "the server stored heads");
    ops.push(Op::Delete(b"mheads".to_vec()));
    store.apply(ops).unwrap();
    store.flush().unwrap();
}

/// How many log records `execution` has in `entries`: records are under
/// `l` + position and hold their execution id at bytes 1..17.
fn records_of(entries: &Entries, execution: ExecutionId) -> usize {
    entries
        .iter()
        .filter(|(k, v)| k[0] == b'l' && v[1..17] == execution.as_bytes()[..])
        .count()
}

#[tokio::test]
async fn offline_commands_leave_a_folder_with_lagging_heads_byte_for_byte_unchanged() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let (id, _) = hello_to_completion(&server.base, "Ann").await;
    server.stop().await;
    let execution: ExecutionId = id.parse().unwrap();
    make_heads_lag(data.path());

    let before = raw_entries(data.path());
    assert!(!before.iter().any(|(k, _)| k[0] == b'h' || k == b"mheads"));
    let events = records_of(&before, execution);
    assert!(events >= 10, "{events} events");
    let folder = data.path().as_os_str();
    let unchanged = |after: &str| {
        assert!(
            raw_entries(data.path()) == before,
            "`retrace {after}` changed the data folder"
        );
    };

    let out = run(&["verify".as_ref(), folder]).await.expect_code(0);
    let summary = out.stdout.lines().last().unwrap();
    assert!(summary.ends_with(": sound"), "{}", out.stdout);
    assert!(summary.contains("1 executions replayed"), "{summary}");
    unchanged("verify");

    let out = run(&["replay".as_ref(), folder, id.as_ref(), OsStr::new("--json")])
        .await
        .expect_code(0);
    let steps: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        steps
            .iter()
            .map(|s| s["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        (1..=events as u64).collect::<Vec<_>>(),
        "the full history"
    );
    assert_eq!(
        steps.last().unwrap()["state"]["status"],
        "completed",
        "{}",
        out.stdout
    );
    unchanged("replay --json");

    let out = run(&["replay".as_ref(), folder]).await.expect_code(0);
    assert!(out.stdout.contains(&id), "{}", out.stdout);
    unchanged("replay (listing)");

    let out = run(&["export".as_ref(), folder]).await.expect_code(0);
    let exported = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["executionId"] == id.as_str())
        .count();
    assert_eq!(exported, events, "{}", out.stdout);
    unchanged("export");

    let out = run(&["export".as_ref(), folder, id.as_ref()])
        .await
        .expect_code(0);
    assert_eq!(out.stdout.lines().count(), events, "{}", out.stdout);
    unchanged("export <execution>");
}

#[tokio::test]
async fn a_folder_that_holds_no_journal_is_refused_and_not_initialised() {
    let data = tempfile::tempdir().unwrap();
    // A retrace.lock, but nothing ever written: not a journal.
    std::fs::write(data.path().join(LOCK_FILE), b"").unwrap();
    let folder = data.path().as_os_str();
    for args in [
        vec!["verify".as_ref(), folder],
        vec!["replay".as_ref(), folder],
        vec!["export".as_ref(), folder],
    ] {
        let out = run(&args).await.expect_code(1);
        assert!(
            out.stderr.contains("is not a retrace data folder")
                && out.stderr.contains("holds no journal"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(raw_entries(data.path()).is_empty(), "{args:?} wrote to it");
    }
}
