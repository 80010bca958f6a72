//! Map steps on the running engine, through the example
//! `examples/workflows/map_files.json`: items fan out to an agent at most
//! `maxConcurrency` at a time, tolerated failures leave `null` results,
//! too many fail the step with the failed items in its error, and a
//! redrive runs again only the items that did not complete.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use retrace_engine::ExecutionId;
use retrace_engine::machine::{ErrorInfo, Event, Status};
use serde_json::{Value, json};
use support::*;

async fn define_example(w: &World) {
    let path = format!(
        "{}/../examples/workflows/map_files.json",
        env!("CARGO_MANIFEST_DIR")
    );
    w.engine
        .define_json(&std::fs::read(path).unwrap())
        .await
        .unwrap();
}

fn files(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("f{i}.doc")).collect()
}

/// Converts every file but those in `broken` (which fail, not retryable),
/// and notes every file it was asked for.
fn converter(broken: BTreeSet<String>, asked: Arc<Mutex<Vec<String>>>) -> Responder {
    Arc::new(move |t| {
        let file = t.spec.input["file"].as_str().unwrap().to_owned();
        asked.lock().unwrap().push(file.clone());
        if broken.contains(&file) {
            let mut e = ErrorInfo::new("unreadable", format!("{file} is damaged"));
            e.retryable = Some(false);
            return Err(e);
        }
        Ok(json!({"path": file.replace(".doc", ".pdf")}))
    })
}

async fn events(w: &World, id: ExecutionId) -> Vec<Event> {
    w.engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect()
}

/// The most items of one map activation in flight at once, from the history.
fn most_in_flight(events: &[Event]) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    for e in events {
        match e {
            Event::ItemStarted { .. } => {
                now += 1;
                most = most.max(now);
            }
            Event::ItemCompleted { .. } | Event::ItemFailed { .. } => now -= 1,
            Event::MapStarted { .. } => now = 0,
            _ => {}
        }
    }
    most
}

/// An agent that answers every task it claims and takes a refused answer
/// in its stride: a task of an item dropped when its map step failed is
/// no longer anyone's to answer.
fn spawn_lenient_agent(w: &World, respond: Responder) -> tokio::task::JoinHandle<()> {
    let engine = w.engine.clone();
    tokio::spawn(async move {
        let caps = ["file_conversion".to_owned()];
        let agent = engine
            .agents()
            .register("lenient", &caps, Some(100))
            .unwrap();
        while let Ok(tasks) = engine.poll_tasks(&agent, 60_000, 10).await {
            for t in tasks {
                let _refused_or_not = match respond(&t) {
                    Ok(output) => engine.complete_task(&t.spec.id, output).await,
                    Err(error) => engine.fail_task(&t.spec.id, error).await,
                };
            }
        }
    })
}

#[tokio::test]
async fn every_file_is_converted_four_at_a_time_in_item_order() {
    let w = World::new().await;
    define_example(&w).await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let agent = spawn_agent(
        &w.engine,
        &["file_conversion"],
        converter(BTreeSet::new(), asked.clone()),
    );
    let id = w
        .start(
            "convert_files",
            json!({"files": files(10), "format": "pdf"}),
        )
        .await;
    let s = w.ended(id).await;
    assert_completed(&s);
    let converted: Vec<Value> = (0..10)
        .map(|i| json!({"file": format!("f{i}.doc"), "converted": format!("f{i}.pdf")}))
        .collect();
    assert_eq!(s.variables["converted"], json!(converted));
    assert_eq!(s.output, Some(json!({"files": 10, "converted": 10})));
    let history = events(&w, id).await;
    assert_eq!(most_in_flight(&history), 4, "maxConcurrency is 4");
    // The list is recorded once: only `map_started` carries it.
    let carrying = history
        .iter()
        .filter(|e| serde_json::to_string(e).unwrap().contains("f9.doc\",\"f"))
        .count();
    assert!(carrying <= 2, "the list appears in {carrying} events");
    agent.abort();
}

#[tokio::test]
async fn a_tolerated_failure_leaves_a_null_result() {
    let w = World::new().await;
    define_example(&w).await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let broken = BTreeSet::from(["f2.doc".to_owned()]);
    let agent = spawn_agent(&w.engine, &["file_conversion"], converter(broken, asked));
    let id = w
        .start("convert_files", json!({"files": files(8), "format": "pdf"}))
        .await;
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(s.variables["converted"][2], Value::Null);
    assert_eq!(s.output, Some(json!({"files": 8, "converted": 7})));
    let failed: Vec<usize> = events(&w, id)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::ItemFailed { item, error, .. } => {
                assert_eq!(error.kind, "unreadable");
                Some(item)
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed, vec![2]);
    agent.abort();
}

#[tokio::test]
async fn too_many_failures_fail_the_step_and_a_redrive_runs_only_those_items() {
    let w = World::new().await;
    define_example(&w).await;
    let asked = Arc::new(Mutex::new(Vec::new()));
    // Three of eight is more than a quarter.
    let broken: BTreeSet<String> = ["f1.doc", "f4.doc", "f6.doc"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let agent = spawn_lenient_agent(&w, converter(broken.clone(), asked.clone()));
    let id = w
        .start("convert_files", json!({"files": files(8), "format": "pdf"}))
        .await;
    let s = w.ended(id).await;
    assert_eq!(s.status, Status::Failed);
    let error = s.error.clone().unwrap();
    assert_eq!(error.kind, "items_failed");
    assert_eq!(error.step.as_deref(), Some("convert_each"));
    let listed: Vec<usize> = error.items.unwrap().0.iter().map(|f| f.index).collect();
    assert_eq!(listed, vec![1, 4, 6], "every failed item, in item order");
    agent.abort();

    // Fixed: the redrive converts what did not complete, and nothing else.
    let done_before: BTreeSet<String> = events(&w, id)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::ItemCompleted { item, .. } => Some(format!("f{item}.doc")),
            _ => None,
        })
        .collect();
    assert!(!done_before.is_empty());
    asked.lock().unwrap().clear();
    let agent = spawn_agent(
        &w.engine,
        &["file_conversion"],
        converter(BTreeSet::new(), asked.clone()),
    );
    w.engine.redrive(id).await.unwrap();
    let s = w.ended(id).await;
    assert_completed(&s);
    assert_eq!(s.output, Some(json!({"files": 8, "converted": 8})));
    let again: BTreeSet<String> = asked.lock().unwrap().iter().cloned().collect();
    assert!(
        again.is_disjoint(&done_before),
        "a completed item ran again: {again:?}"
    );
    assert!(
        broken.is_subset(&again),
        "the failed items ran again: {again:?}"
    );
    let starts = events(&w, id)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::MapStarted { items, .. } if !items.is_empty()))
        .count();
    assert_eq!(
        starts, 1,
        "the items are recorded once, not again on the redrive"
    );
    agent.abort();
}
