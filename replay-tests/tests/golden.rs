//! Golden journals: journals written by an earlier build stay readable
//! forever. Each folder under `replay-tests/golden/` holds a journal (sled)
//! and `expected.json`, the states the writing engine held. This test opens
//! a copy with this build, checks every chain, replays every execution to
//! exactly the recorded state, and runs the unfinished ones to their end.
//! A change that breaks old journals fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use retrace_engine::clock::SimClock;
use retrace_engine::machine::{ErrorInfo, ExecutionState, Status};
use retrace_engine::runtime::{Engine, EngineConfig, HandlerTask, TaskHandler};
use retrace_journal::{EventLog, Journal, Options};
use serde_json::{Value, json};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn handlers() -> Vec<(String, Arc<dyn TaskHandler>)> {
    let work: Arc<dyn TaskHandler> = Arc::new(|t: HandlerTask| {
        async move { Ok(json!({"step": t.step, "attempt": t.attempt})) }.boxed()
    });
    let fail: Arc<dyn TaskHandler> =
        Arc::new(|_t: HandlerTask| async move { Err(ErrorInfo::new("declined", "no")) }.boxed());
    vec![
        ("golden.work".into(), work.clone()),
        ("golden.undo".into(), work),
        ("golden.fail".into(), fail),
    ]
}

fn golden_sets() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let mut sets: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    sets.sort();
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_golden_journal_opens_verifies_replays_and_runs_on() {
    let sets = golden_sets();
    assert!(!sets.is_empty(), "no golden journals found");
    for set in sets {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&set.join("journal"), &dir.path().join("journal"));
        let expected: serde_json::Map<String, Value> =
            serde_json::from_slice(&std::fs::read(set.join("expected.json")).unwrap()).unwrap();

        let log = EventLog::open(dir.path().join("journal"), Options::default()).unwrap();
        let report = log.verify().await.unwrap();
        assert!(report.is_sound(), "{}: {report:?}", set.display());
        let journal: Arc<dyn Journal> = Arc::new(log.clone());

        let clock = SimClock::new(1_800_000_000_000);
        let mut config = EngineConfig::journal(journal.clone(), Arc::new(clock));
        config.handlers = handlers();
        let engine = Engine::open(config).await.unwrap();

        let mut states = std::collections::BTreeMap::new();
        for (name, value) in &expected {
            let recorded: ExecutionState = serde_json::from_value(value.clone()).unwrap();
            // From scratch, and as the engine rebuilt it (snapshot + tail).
            let replayed = engine
                .read()
                .fold(recorded.id, u64::MAX)
                .await
                .unwrap()
                .expect("a stored history");
            assert_eq!(
                replayed,
                recorded,
                "{}: {name} replays differently",
                set.display()
            );
            assert_eq!(engine.state(recorded.id).await.unwrap(), recorded, "{name}");
            states.insert(name.clone(), recorded);
        }
        assert_eq!(states["completed"].status, Status::Completed);
        assert_eq!(states["compensated"].status, Status::Compensated);

        // The unfinished ones run on under this build.
        let waiting = states["waiting"].id;
        engine
            .signal(waiting, "go", json!("late"), None)
            .await
            .unwrap();
        let done = engine.wait_until_ended(waiting).await.unwrap();
        assert_eq!(done.status, Status::Completed, "{:?}", done.error);
        assert_eq!(done.variables["child"], json!(2));
        let paused = states["paused"].id;
        assert_eq!(states["paused"].status, Status::Paused);
        engine.resume(paused).await.unwrap();
        let s = engine.state(paused).await.unwrap();
        assert_eq!(s.status, Status::Running);
        assert!(log.verify().await.unwrap().is_sound());
    }
}
