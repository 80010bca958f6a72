//! `retrace verify` on a stopped server's data folder: sound (exit 0), a
//! record with one byte flipped (exit 1, naming the execution and seq), and
//! a snapshot that disagrees with the replay of its events (exit 1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_support;

use std::path::Path;

use cli_support::{Server, hello_to_completion, run};
use retrace_engine::ExecutionId;
use retrace_journal::store::sled::SledStore;
use retrace_journal::store::{Op, Store};
use retrace_journal::{EventLog, Journal, Options, StreamId};
use serde_json::Value;

/// A stopped server's folder holding one completed `hello` execution.
async fn folder_with_one_execution() -> (tempfile::TempDir, String) {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path()).await;
    let (id, _) = hello_to_completion(&server.base, "Ann").await;
    server.stop().await;
    (data, id)
}

#[tokio::test]
async fn a_sound_folder_verifies_with_exit_code_0() {
    let (data, _) = folder_with_one_execution().await;
    let out = run(&["verify".as_ref(), data.path().as_os_str()])
        .await
        .expect_code(0);
    let summary = out.stdout.lines().last().unwrap();
    assert!(summary.ends_with(": sound"), "{}", out.stdout);
    assert!(
        summary.contains("1 executions replayed, 1 snapshots compared"),
        "{summary}"
    );
}

/// Flips one byte of the payload of `execution`'s event `seq`, in place,
/// through the store and the key layout of `docs/journal-format.md`: log
/// records are under `l` + position (u64 big-endian), and a record holds its
/// execution id at bytes 1..17 and its seq (u64 little-endian) at 17..25.
fn flip_a_byte(data: &Path, execution: ExecutionId, seq: u64) {
    let store = SledStore::open(data).unwrap();
    let records = store.scan(b"l", b"m", usize::MAX).unwrap();
    let (key, mut value) = records
        .into_iter()
        .find(|(_, v)| v[1..17] == execution.as_bytes()[..] && v[17..25] == seq.to_le_bytes())
        .expect("the record is in the log");
    // Inside the payload: before the 32-byte hash at the end.
    let at = value.len() - 32 - 5;
    value[at] ^= 0x01;
    store.apply(vec![Op::Put(key, value)]).unwrap();
    store.flush().unwrap();
}

#[tokio::test]
async fn a_flipped_byte_fails_verify_naming_the_execution_and_seq() {
    let (data, id) = folder_with_one_execution().await;
    flip_a_byte(data.path(), id.parse().unwrap(), 4);
    let out = run(&["verify".as_ref(), data.path().as_os_str()])
        .await
        .expect_code(1);
    let named = format!("execution {id} seq 4");
    assert!(
        out.stdout.lines().any(|l| l.starts_with(&named)),
        "`{named}` in:\n{}",
        out.stdout
    );
    assert!(
        !out.stdout.lines().last().unwrap().ends_with("sound"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_snapshot_that_disagrees_with_the_replay_fails_verify() {
    let (data, id) = folder_with_one_execution().await;
    let execution: ExecutionId = id.parse().unwrap();
    {
        let journal = EventLog::open(data.path(), Options::default()).unwrap();
        let stream = StreamId::from_bytes(*execution.as_bytes());
        let snapshot = journal
            .latest_snapshot(stream)
            .await
            .unwrap()
            .expect("a snapshot at the end");
        let mut state: Value = serde_json::from_slice(&snapshot.state).unwrap();
        state["variables"]["message"] = Value::from("Goodbye");
        journal
            .put_snapshot(stream, snapshot.seq, serde_json::to_vec(&state).unwrap())
            .await
            .unwrap();
    }
    let out = run(&["verify".as_ref(), data.path().as_os_str()])
        .await
        .expect_code(1);
    assert!(
        out.stdout.contains(&format!(
            "execution {id} seq 10: the snapshot differs from the replay of events 1 to 10 in variables"
        )),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn a_missing_folder_is_not_created_and_fails() {
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("no-such-folder");
    let out = run(&["verify".as_ref(), missing.as_os_str()])
        .await
        .expect_code(1);
    assert!(
        out.stderr.contains("is not a retrace data folder"),
        "{}",
        out.stderr
    );
    assert!(!missing.exists());
}

/// The dashboard's chain badge (`GET /v1/executions/{id}/verify`) on a
/// running server sees the same flipped byte: broken at seq 4, with the
/// three events before it intact; the other execution's chain verifies.
#[tokio::test]
async fn a_flipped_byte_breaks_the_chain_the_verify_endpoint_checks() {
    let (data, id) = folder_with_one_execution().await;
    flip_a_byte(data.path(), id.parse().unwrap(), 4);
    let server = Server::start(data.path()).await;
    let (other, _) = hello_to_completion(&server.base, "Bo").await;
    let check = |id: String| {
        let url = format!("{}/v1/executions/{id}/verify", server.base);
        async move {
            let answer = reqwest::get(&url).await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()
        }
    };
    let broken = check(id.clone()).await;
    assert_eq!(broken["verified"], false, "{broken}");
    assert_eq!(broken["events"], 10, "{broken}");
    assert_eq!(broken["intact"], 3, "{broken}");
    let problem = broken["problem"].as_str().unwrap();
    assert!(problem.contains(&format!("stream {id} seq 4")), "{problem}");
    let sound = check(other).await;
    assert_eq!(sound["verified"], true, "{sound}");
    assert_eq!(sound["intact"], sound["events"], "{sound}");
    assert!(sound["problem"].is_null(), "{sound}");
    server.stop().await;
}
