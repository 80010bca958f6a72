//! The bounds on executions, end to end through the runtime: a definition
//! cannot ask for more transitions than the engine allows; a loop that runs
//! away is stopped by the history bound (the history never holds more than
//! `max_history_events`, the failure being its last event), and is paced
//! meanwhile so it cannot take a core or the disk from the others. Pacing
//! only delays: the same execution records the same events with or without
//! it.
//!
//! Nothing here times anything: pacing is proved by its counter (a paced
//! continuation or timer is counted when it is put off, before the trigger
//! that put it off returns) and by another execution completing while the
//! paced one still runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::support;

use std::sync::Arc;

use retrace_engine::Error;
use retrace_engine::clock::SimClock;
use retrace_engine::machine::{Event, Limits, Rejection, Status, error_types};
use retrace_engine::model::WorkflowDefinition;
use retrace_engine::runtime::{Engine, EngineConfig, Pacing};
use retrace_journal::store::memory::MemoryStore;
use retrace_journal::{EventLog, Options};
use serde_json::{Value, json};
use support::{T0, World, assert_completed, from_docs};

/// A world whose engine has the given limit and pacing.
async fn world(history_events_max: u64, pacing: Pacing) -> World {
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let engine = open(&store, &clock, history_events_max, pacing).await;
    World::in_memory(store, clock, engine)
}

async fn open(
    store: &MemoryStore,
    clock: &SimClock,
    history_events_max: u64,
    pacing: Pacing,
) -> Engine {
    let journal = EventLog::in_memory(store.clone(), Options::default()).unwrap();
    let config = EngineConfig {
        limits: Limits { history_events_max },
        pacing,
        ..EngineConfig::journal(Arc::new(journal), Arc::new(clock.clone()))
    };
    Engine::open(config).await.unwrap()
}

/// A count the loops below never reach.
const FOREVER: u64 = 1_000_000_000_000;

/// The finding's loop: a transform that counts and a decision that goes
/// back to it while `n < until`, then `then` (if any) and the end.
fn counting_loop(name: &str, max_transitions: u64, until: u64, then: Option<Value>) -> Value {
    let mut steps = vec![
        json!({"id": "count", "type": "task", "capability": "transform",
               "input": "${ has(variables.n) ? variables.n + 1 : 1 }",
               "output": {"n": "$.output"}, "next": "more"}),
        json!({"id": "more", "type": "decision",
               "decision": {"expression": format!("variables.n < {until}"),
                            "branches": {"true": "count", "false": "last"}}}),
    ];
    match then {
        Some(mut step) => {
            step["id"] = json!("last");
            step["next"] = json!("end");
            steps.push(step);
            steps.push(
                json!({"id": "end", "type": "task", "capability": "transform",
                              "input": "$.variables.n"}),
            );
        }
        None => steps.push(
            json!({"id": "last", "type": "task", "capability": "transform",
                                  "input": "$.variables.n"}),
        ),
    }
    json!({"name": name, "maxTransitions": max_transitions, "steps": steps})
}

async fn history(w: &World, id: retrace_engine::ExecutionId) -> Vec<Event> {
    w.engine
        .read()
        .events_until(id, u64::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

#[tokio::test]
async fn a_definition_asking_for_more_transitions_than_the_engine_allows_is_refused() {
    let w = world(1_000, Pacing::off()).await;
    let doc = counting_loop("greedy", 9_223_372_036_854_775_807, 10, None);
    let e = w
        .engine
        .define_json(doc.to_string().as_bytes())
        .await
        .unwrap_err();
    let Error::InvalidWorkflow(definition) = &e else {
        panic!("refused for another reason: {e}");
    };
    let problem = &definition.problems[0];
    assert_eq!(problem.path, "maxTransitions");
    assert!(
        problem.message.contains("at most 1000000"),
        "the problem names the limit: {}",
        problem.message
    );
    assert!(w.engine.workflows().is_empty(), "nothing was defined");
    // The maximum itself is allowed.
    let max = WorkflowDefinition::MAX_TRANSITIONS_MAX;
    w.define(counting_loop("bounded", max, 10, None)).await;
}

#[tokio::test]
async fn a_runaway_loop_fails_at_the_history_limit_with_nothing_but_the_failure_after() {
    let limit = 3_000;
    let w = world(limit, Pacing::off()).await;
    // maxTransitions at its maximum: only the history bound stops it. An
    // error route, an error handler and a compensation it does not run.
    let mut doc = counting_loop(
        "runaway",
        WorkflowDefinition::MAX_TRANSITIONS_MAX,
        FOREVER,
        None,
    );
    doc["steps"][0]["compensate"] = json!({"capability": "transform"});
    doc["steps"][0]["onError"] = json!("last");
    doc["errorHandlers"] = json!([{"error": "*", "handler": "last"}]);
    w.define(doc).await;
    let id = w.start("runaway", json!({})).await;
    let end = w.ended(id).await;

    assert_eq!(end.status, Status::Failed);
    let error = end.error.clone().unwrap();
    assert_eq!(error.kind, error_types::HISTORY_LIMIT);
    assert!(
        error.message.contains("limit of 3000 events"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("--max-history-events"),
        "{}",
        error.message
    );
    // The history bound: exactly `limit` events, the failure the last.
    let events = history(&w, id).await;
    assert_eq!(events.len() as u64, limit);
    assert_eq!(end.seq, limit);
    assert!(matches!(events.last(), Some(Event::ExecutionFailed { .. })));
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::CompensationBegan { .. } | Event::ErrorRouted { .. } | Event::StepFailed { .. }
        )),
        "no compensation, route or handler ran"
    );
    // Replay equals live: the failure is an event, the limit is not needed.
    let folded = w.engine.read().fold(id, u64::MAX).await.unwrap().unwrap();
    assert_eq!(folded, end);
    assert_eq!(
        w.engine.metrics().workflows["runaway"].history_limit_failures,
        1
    );
}

#[tokio::test]
async fn a_failure_at_the_history_limit_is_redriven_only_once_the_limit_is_raised() {
    let mut w = world(11, Pacing::off()).await;
    w.define(json!({"name": "store", "steps": [
        {"id": "fetch", "type": "task", "capability": "http.get", "next": "put"},
        {"id": "put", "type": "task", "capability": "db.put"}]}))
        .await;
    let agent = w.agent(&["http.get", "db.put"]);
    let id = w.start("store", json!({})).await;
    let fetch = w.claim(&agent).await;
    w.complete(&fetch, json!("page")).await;
    let put = w.claim(&agent).await;
    // 11 events: the failure is the last the limit allows.
    w.fail(&put, "db_down", "no database").await;
    let failed = w.ended(id).await;
    assert_eq!(failed.seq, 11);
    let refused = w.engine.redrive(id).await.unwrap_err();
    assert!(
        matches!(&refused, Error::Rejected(Rejection::WrongState { .. })),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("max_history_events"),
        "{refused}"
    );

    // The same journal, opened with a higher limit.
    let disk = w.store.duplicate();
    w.engine = open(&disk, &w.clock, 100, Pacing::off()).await;
    w.store = disk;
    w.engine.redrive(id).await.unwrap();
    let agent = w.agent(&["db.put"]);
    let put = w.claim(&agent).await;
    w.complete(&put, json!("stored")).await;
    assert_completed(&w.ended(id).await);
}

#[tokio::test]
async fn a_builtins_only_loop_is_paced_while_other_executions_run() {
    // 100 events a second, 500 at once: the loop's first trigger records
    // 1,001 events (as many as one append carries), so its continuation
    // waits for the budget.
    let w = world(1_000_000, Pacing { events_per_s: 100 }).await;
    w.define(counting_loop(
        "spin",
        WorkflowDefinition::MAX_TRANSITIONS_MAX,
        FOREVER,
        None,
    ))
    .await;
    w.define(json!({"name": "quick", "steps": [
        {"id": "a", "type": "task", "capability": "transform", "input": "done"}]}))
        .await;
    let spin = w.start("spin", json!({})).await;
    // Counted before `start` returned: the continuation is put off.
    assert_eq!(w.engine.metrics().workflows["spin"].paced, 1);

    // Another execution runs to its end meanwhile; its own budget is
    // untouched, so nothing of it waits.
    let quick = w.start("quick", json!({})).await;
    assert_completed(&w.ended(quick).await);
    assert_eq!(w.engine.metrics().workflows["quick"].paced, 0);

    // The paced loop still runs (at 100 events a second it would take
    // hours to reach its history limit), and a command reaches it at once:
    // nothing holds its lock while it waits.
    assert_eq!(w.state(spin).await.status, Status::Running);
    let ended = w.engine.terminate(spin, "enough").await.unwrap();
    assert_eq!(ended.status, Status::Terminated);
}

#[tokio::test]
async fn pacing_only_delays_a_loop_and_changes_nothing_it_records() {
    // 450 iterations (903 events in the first trigger), then a wait of no
    // time: at 150 events a second (750 at once) the wait's timer, due at
    // once, is put off for about a second.
    let doc = counting_loop(
        "then_wait",
        10_000,
        450,
        Some(json!({"type": "wait", "wait": {"seconds": 0}})),
    );
    let mut runs = Vec::new();
    for pacing in [Pacing::off(), Pacing { events_per_s: 150 }] {
        let w = world(1_000_000, pacing).await;
        w.define(doc.clone()).await;
        let id = w.start("then_wait", json!({})).await;
        let paced = w.engine.metrics().workflows["then_wait"].paced;
        let end = w.ended(id).await;
        assert_completed(&end);
        runs.push((paced, end.output.clone(), history(&w, id).await));
    }
    let (unpaced, paced) = (&runs[0], &runs[1]);
    assert_eq!(unpaced.0, 0, "pacing off never waits");
    assert_eq!(paced.0, 1, "the timer waited for the budget");
    assert_eq!(paced.1, Some(json!(450)));
    assert_eq!(paced.1, unpaced.1, "the same output");
    assert_eq!(paced.2, unpaced.2, "the same events");
}

/// docs/dsl.md, "Limits on executions": the runaway loop it shows ends at
/// the history limit, `failed` with `history_limit`, the failure the last
/// event (a small limit here, so the test is quick; pacing as by default).
#[tokio::test]
async fn the_documented_runaway_loop_ends_at_the_history_limit() {
    let w = world(2_500, Pacing::default()).await;
    w.define(from_docs("count_forever")).await;
    let id = w.start("count_forever", json!({})).await;
    let end = w.ended(id).await;
    assert_eq!(end.status, Status::Failed);
    assert_eq!(end.error.unwrap().kind, error_types::HISTORY_LIMIT);
    assert_eq!(end.seq, 2_500);
    let events = history(&w, id).await;
    assert_eq!(events.len(), 2_500);
    assert!(matches!(events.last(), Some(Event::ExecutionFailed { .. })));
}

/// A data folder written before `maxTransitions` had a maximum still opens:
/// its catalog holds a definition with a larger value (written here as an
/// earlier build stored it), which is read as it was accepted; the history
/// limit bounds its executions.
#[tokio::test]
async fn a_definition_stored_before_the_maximum_still_opens_and_is_bounded() {
    use retrace_journal::{Journal, NewEvent, StreamId};
    let store = MemoryStore::new();
    let clock = SimClock::new(T0);
    let doc = counting_loop("old", 9_223_372_036_854_775_807, FOREVER, None);
    {
        // The catalog: the reserved stream, one `workflow_defined` record
        // holding the document.
        let journal = EventLog::in_memory(store.clone(), Options::default()).unwrap();
        let defined = NewEvent::new("workflow_defined", T0, doc.to_string().into_bytes());
        journal
            .append(StreamId::NIL, 1, vec![defined])
            .await
            .unwrap();
        journal.flush().await.unwrap();
    }
    let engine = open(&store, &clock, 1_000, Pacing::off()).await;
    let w = World::in_memory(store, clock, engine);
    let id = w.start("old", json!({})).await;
    let end = w.ended(id).await;
    assert_eq!(end.max_transitions, 9_223_372_036_854_775_807);
    assert_eq!(end.error.unwrap().kind, error_types::HISTORY_LIMIT);
    assert_eq!(end.seq, 1_000);
}
